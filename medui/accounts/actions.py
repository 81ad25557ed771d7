"""What the audit trail records: its actions and outcomes (a light module: no database imports)."""

from __future__ import annotations

SIGN_IN, SIGN_OUT, OPEN_PAGE = "sign-in", "sign-out", "open-page"
OPEN_SERIES, SCORE, EXPLAIN = "open-series", "score", "explain"
EXPORT_RESULT, SEND_RESULT = "export-result", "send-result"
START_JOB, CANCEL_JOB = "start-job", "cancel-job"
REGISTER_MODEL, DELETE_MODEL, PROMOTE_MODEL = "register-model", "delete-model", "promote-model"
SETTINGS_CHANGE, EXPORT_AUDIT = "settings-change", "export-audit"
ACTIONS = (SIGN_IN, SIGN_OUT, OPEN_PAGE, OPEN_SERIES, SCORE, EXPLAIN, EXPORT_RESULT, SEND_RESULT, START_JOB,
           CANCEL_JOB, REGISTER_MODEL, DELETE_MODEL, PROMOTE_MODEL, SETTINGS_CHANGE, EXPORT_AUDIT)
OK, REFUSED, FAILED = "ok", "refused", "failed"
OUTCOMES = (OK, REFUSED, FAILED)
