"""MedUI entry point: `streamlit run app.py`.

The file plays three parts, told apart by the name Python gives it:

- `app`: `streamlit run` finds the `st.App` below (by reading this file) and imports the file as a
  module to serve it; the app adds MedUI's HTTP routes (the reading component's bundle and the
  voxels of the series being read, `medui.ui.server`) beside Streamlit's own, and runs this same
  file as the script of every session;
- `__main__`: Streamlit runs it as the app script (also under `AppTest`): the shell, its pages;
- `__mp_main__`: worker processes that decode big compressed series (medui.io.parallel) re-import
  the main script, as Python's multiprocessing does: for them this file must do nothing (building
  the app there would import Streamlit and TensorFlow in every worker, seconds per upload).
"""

if __name__ == "app":
    import streamlit as st

    from medui.ui.server import routes

    app = st.App("app.py", routes=routes())
elif __name__ != "__mp_main__":
    from medui.ui.shell import run_app

    run_app()
