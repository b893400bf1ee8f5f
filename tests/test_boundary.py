"""board/ is THE hardware boundary: nothing else imports gpiozero or alsaaudio; dsp/ and
line/ are pure (no IO, no clock of their own)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "appliance"


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def modules(under: str = "") -> list[Path]:
    return sorted((PACKAGE / under).rglob("*.py"))


def test_only_board_imports_hardware_libraries() -> None:
    for path in modules():
        hardware = imports(path) & {"gpiozero", "alsaaudio", "lgpio", "RPi"}
        inside_board = path.is_relative_to(PACKAGE / "board")
        assert inside_board or not hardware, f"{path.relative_to(PACKAGE)} imports {hardware}"


def test_the_check_would_catch_a_stray_import(tmp_path: Path) -> None:
    stray = tmp_path / "stray.py"
    stray.write_text("from gpiozero import LED\nimport alsaaudio as a\n")
    assert imports(stray) >= {"gpiozero", "alsaaudio"}


def test_line_and_dsp_are_pure() -> None:
    impure = {"time", "os", "socket", "subprocess", "threading", "gpiozero", "alsaaudio", "sqlite3"}
    for under in ("line", "dsp"):
        for path in modules(under):
            found = imports(path) & impure
            assert not found, f"{path.relative_to(PACKAGE)} imports {found}"
