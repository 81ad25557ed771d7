"""Users, roles and the audit trail (core: no Streamlit).

`roles` maps an identity provider's claim to MedUI roles and each role to what it may do; `actor`
is the small typed identity every use case receives; `audit` is the append-only trail in MedUI's
database (SQLAlchemy, SQLite by default).
"""
