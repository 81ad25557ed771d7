"""MedUI entry point: `streamlit run app.py`.

Streamlit runs this file as `__main__`. Worker processes that decode big compressed series
(medui.io.parallel) re-import the main script as `__mp_main__` when they start, as Python's
multiprocessing does with every main script: for them this file must do nothing (building the app
there would import Streamlit and TensorFlow in every worker, seconds per upload).
"""

if __name__ != "__mp_main__":
    from medui.ui.shell import run_app

    run_app()
