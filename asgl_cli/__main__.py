"""``python -m asgl_cli`` = ``asgl``."""

from asgl_cli.main import app

app(prog_name="asgl")
