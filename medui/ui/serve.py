"""Start the app server after checking its sign-in configuration: `python -m medui.ui.serve [streamlit
options]` (what `make run` does), then `streamlit run app.py` with the same options.

It refuses to start (exit code 2, and a message saying what to configure) when MEDUI_REQUIRE_AUTH=1
and the secrets Streamlit would load have no usable `[auth]`; and it warns when the server listens
on other interfaces than the loopback without sign-in. The secrets are found exactly as the server
finds them: Streamlit's own configuration (`--secrets.files`, STREAMLIT_SECRETS_FILES,
.streamlit/config.toml) and secrets loader.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def flag_options(argv: Sequence[str]) -> dict[str, object]:
    """Streamlit's `--section.option value` / `--section.option=value` flags as config options
    (options given more than once, such as secrets.files, as lists)."""
    out: dict[str, object] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "." in arg:
            name, eq, value = arg[2:].partition("=")
            if not eq and i + 1 < len(args):
                value, i = args[i + 1], i + 1
            if name in out:
                previous = out[name]
                out[name] = [*(previous if isinstance(previous, list) else [previous]), value]
            else:
                out[name] = [value] if name == "secrets.files" else value
        i += 1
    return out


def env_options(given: dict[str, object]) -> dict[str, object]:
    """The STREAMLIT_* environment variables `streamlit run` reads (through its command-line parser) as
    config options, for the options not given as flags."""
    from streamlit import config

    out = dict(given)
    for key, option in config.get_config_options().items():
        value = os.environ.get(option.env_var)
        if value is not None and key not in out:
            out[key] = value.split() if option.multiple else value
    return out


def problem(argv: Sequence[str]) -> str | None:
    """Why the server must not start with these options and this environment, or None."""
    from streamlit import config
    from streamlit.runtime.secrets import secrets_singleton

    from medui.ui import auth

    wanted = {k: v for k, v in env_options(flag_options(argv)).items() if k.startswith("secrets.")}
    config.get_config_options(force_reparse=True, options_from_flags=wanted)
    secrets_singleton._reset()  # read the files these options name, not ones loaded before
    return auth.startup_problem()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.chdir(ROOT)  # .streamlit/ (config and secrets) beside app.py, as the server reads it
    why = problem(argv)
    if why:
        print(f"MedUI will not start: {why}", file=sys.stderr)
        return 2
    address = str(env_options(flag_options(argv)).get("server.address") or "")
    from medui.ui import auth

    if address and address not in LOOPBACK and auth.auth_section() is None:
        print(f"warning: listening on {address} without sign-in: anyone who reaches this machine can use MedUI as "
              "its single user. On a shared server configure [auth] and set MEDUI_REQUIRE_AUTH=1.", file=sys.stderr)
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), *argv])


if __name__ == "__main__":
    raise SystemExit(main())
