"""The ``aptrt`` command line: ``demo ball`` run headless (frames, pictures, shutdown), the other
subcommands, ``python -m aptrt``, and Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import threading
import types
import zlib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from rich.console import Console

import aptrt
import aptrt._demo
from aptrt.__main__ import main, mover_mix
from aptrt.samples.ball import (
    DemoConfig,
    DemoResult,
    Snapshot,
    frame_text,
    hex_of,
    png_bytes,
    render_frame,
    rgb_of,
    save_picture,
    svg_text,
)
from aptrt.samples.ball import run as run_demo

SVG = "{http://www.w3.org/2000/svg}"


def demo_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("aptrt-", "ball-"))]


def read_png(data: bytes) -> tuple[int, int, set[bytes]]:
    """Check a PNG chunk by chunk (signature, CRCs, header, scanlines) and return its size and colors."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks = []
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == crc, tag
        chunks.append((tag, body))
        pos += 12 + length
    assert pos == len(data)
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, color_type, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color_type, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for tag, body in chunks if tag == b"IDAT"))
    stride = 1 + 3 * width
    assert len(raw) == height * stride
    colors: set[bytes] = set()
    for row in range(height):
        line = raw[row * stride : (row + 1) * stride]
        assert line[0] == 0  # filter type None
        colors |= {line[i : i + 3] for i in range(1, stride, 3)}
    return width, height, colors


def check_svg(text: str, result: DemoResult) -> None:
    root = ElementTree.fromstring(text.encode())
    assert root.tag == f"{SVG}svg"
    strokes = {line.get("stroke") for line in root.iter(f"{SVG}polyline")}
    assert strokes, "no path drawn"
    assert strokes <= {hex_of(point.color) for point in result.path}
    legend = [t.text for t in root.iter(f"{SVG}text")]
    assert legend == [f"{t.name}: {t.moves} moves" for t in result.threads]
    (ball,) = root.iter(f"{SVG}circle")
    assert ball.get("fill") == hex_of(result.ball.color)


def check_png(data: bytes, result: DemoResult) -> None:
    width, height, colors = read_png(data)
    assert width > 100 and height > 100
    path_colors = {bytes(rgb_of(point.color)) for point in result.path[1:]}
    assert path_colors <= colors  # every color the path took is drawn
    assert {bytes(rgb_of(t.color)) for t in result.threads} <= colors  # and every thread has its swatch


@pytest.fixture(scope="module")
def demo_run() -> tuple[DemoResult, list[Snapshot]]:
    """One headless run of the demo (two MTA threads, an asyncio STA and a trio STA), shared by the tests."""
    snapshots: list[Snapshot] = []
    config = DemoConfig(seconds=None, frames=12, mta_movers=2, sta_movers=2, fps=60, rate=60)
    result = run_demo(config, on_frame=snapshots.append)
    return result, snapshots


class TestHeadlessDemo:
    """The demo with no terminal: the painter's frames as text, the pictures, and a clean shutdown."""

    def test_every_mover_moved_the_ball_and_saw_it_die(self, demo_run: tuple[DemoResult, list[Snapshot]]) -> None:
        result, _ = demo_run
        assert len(result.movers) == 4
        assert all(m.moves > 0 and m.saw_dead for m in result.movers), result.movers
        assert {m.kind for m in result.movers} == {"MTA thread", "STA asyncio", "STA trio"}
        assert result.total_moves >= sum(m.moves for m in result.movers)
        assert result.can_unload_now

    def test_frames(self, demo_run: tuple[DemoResult, list[Snapshot]]) -> None:
        _, snapshots = demo_run
        assert [s.index for s in snapshots] == list(range(12))
        for snapshot in snapshots:
            text = frame_text(snapshot, cols=40, rows=10)
            lines = text.splitlines()
            assert lines[0].startswith("┌ DllBall ") and len(lines[0]) == 42
            assert all(line.startswith("│") and line.endswith("│") and len(line) == 42 for line in lines[1:11])
            assert lines[11] == "└" + "─" * 40 + "┘"
            canvas = "".join(lines[1:11])
            assert "█" in canvas or ("▀" in canvas and "▄" in canvas)  # the ball is drawn
            status = "\n".join(lines[12:])
            assert "apartments: main(asyncio) mover-2(asyncio) mover-3(trio) MTA(" in status
            assert "calls in flight: " in status
            for entry in snapshot.threads:
                assert entry.name in status

    def test_frames_in_color(self, demo_run: tuple[DemoResult, list[Snapshot]]) -> None:
        _, snapshots = demo_run
        last = snapshots[-1]
        console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=120)
        console.print(render_frame(last, cols=40, rows=10))
        ansi = console.file.getvalue()  # type: ignore[attr-defined]
        red, green, blue = rgb_of(last.ball.color)
        assert f"38;2;{red};{green};{blue}" in ansi  # the ball, in the color of the thread that moved it last

    def test_pictures(self, demo_run: tuple[DemoResult, list[Snapshot]], tmp_path: Path) -> None:
        result, _ = demo_run
        check_svg(svg_text(result), result)
        check_png(png_bytes(result), result)
        assert save_picture(result, tmp_path / "path.svg").read_text(encoding="utf-8") == svg_text(result)
        assert save_picture(result, tmp_path / "path.PNG").read_bytes() == png_bytes(result)
        with pytest.raises(ValueError, match=r"\.svg or \.png"):
            save_picture(result, tmp_path / "path.gif")

    def test_no_thread_left(self, demo_run: tuple[DemoResult, list[Snapshot]]) -> None:
        assert demo_threads() == []
        with pytest.raises(aptrt.NotInitializedError):
            aptrt.current_runtime()

    def test_run_ball_headless(self) -> None:
        out = io.StringIO()
        result = aptrt._demo.run_ball(
            DemoConfig(seconds=None, frames=3, mta_movers=1, sta_movers=1),
            headless=True,
            console=Console(file=out, width=100),
            cols=30,
            rows=8,
        )
        text = out.getvalue()
        assert text.startswith("┌ DllBall ─")  # the last frame, painted just before the kill
        assert result.config.rect.width == 30 * aptrt._demo.UNITS_PER_PIXEL
        assert "done: the painter killed the ball" in text
        assert text.count("saw E_FAIL") == 2
        assert "DllCanUnloadNow: S_OK" in text
        assert demo_threads() == []


class TestCommandLine:
    def test_demo_ball_headless_svg(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        target = tmp_path / "ball.svg"
        argv = ["demo", "ball", "--headless", "--seconds", "0", "--frames", "6", "--cols", "40", "--rows", "10"]
        assert main([*argv, "--save", str(target)]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0].startswith("┌ DllBall")
        assert out.count("saw E_FAIL") == 4
        assert f"Saved the path to {target}" in out.replace("\n", "")
        root = ElementTree.fromstring(target.read_bytes())
        assert root.tag == f"{SVG}svg" and list(root.iter(f"{SVG}polyline"))
        assert demo_threads() == []

    def test_demo_ball_png_trio_agile(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        target = tmp_path / "ball.png"
        argv = ["demo", "ball", "--headless", "--frames", "6", "--backend", "trio", "--agile", "--mta", "1"]
        assert main([*argv, "--sta", "2", "--save", str(target)]) == 0
        out = capsys.readouterr().out
        assert "mover-1  STA trio" in out and "mover-2  STA trio" in out
        assert out.count("saw E_FAIL") == 3
        width, _, colors = read_png(target.read_bytes())
        assert width > 100 and len(colors) > 3
        assert demo_threads() == []

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--save", "ball.gif"], ".svg or .png"),
            (["--movers", "0"], "at least one mover"),
            (["--mta", "0", "--sta", "0"], "at least one mover"),
            (["--fps", "0"], "must be positive"),
            (["--seconds", "-1"], "must be 0"),
            (["--backend", "tokio"], "invalid choice"),
        ],
    )
    def test_bad_arguments(self, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["demo", "ball", "--headless", *args])
        assert info.value.code == 2
        assert message in capsys.readouterr().err
        assert demo_threads() == []

    @pytest.mark.parametrize(
        ("movers", "mta", "sta", "expected"),
        [
            (4, None, None, (2, 2)),
            (5, None, None, (3, 2)),
            (1, None, None, (1, 0)),
            (4, 1, None, (1, 3)),
            (4, None, 3, (1, 3)),
            (2, None, 5, (0, 5)),
            (4, 2, 5, (2, 5)),
        ],
    )
    def test_mover_mix(self, movers: int, mta: int | None, sta: int | None, expected: tuple[int, int]) -> None:
        assert mover_mix(movers, mta, sta) == expected

    @pytest.mark.parametrize("argv", [[], ["demo"], ["demo", "ball"]])
    def test_the_ball_is_the_default(self, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
        seen: list[Any] = []

        def fake_run_ball(config: DemoConfig, **kwargs: Any) -> Any:
            seen.append((config, kwargs))
            return types.SimpleNamespace(interrupted=False)

        monkeypatch.setattr(aptrt._demo, "run_ball", fake_run_ball)
        assert main(argv) == 0
        ((config, kwargs),) = seen
        assert (config.seconds, config.frames, config.mta_movers, config.sta_movers) == (5.0, None, 2, 2)
        assert (config.backend, config.agile, config.fps, config.rate) == ("mixed", False, 30.0, 30.0)
        assert kwargs == {"headless": None, "save": None, "cols": None, "rows": None}

    def test_interrupted_exit_status(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(aptrt._demo, "run_ball", lambda config, **kw: types.SimpleNamespace(interrupted=True))
        assert main(["demo", "ball", "--seconds", "0"]) == 130

    def test_demo_apartments(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["demo", "apartments"]) == 0
        out = capsys.readouterr().out
        assert "right/trio (thread aptrt-sta-right) greets main" in out
        assert "MTA tally after 1000 calls from two STAs: 1000" in out

    def test_info(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["info"]) == 0
        out = capsys.readouterr().out
        assert f"aptrt {aptrt.__version__} on Python" in out
        assert "DllBall.1" in out and "ThreadingModel=Both" in out
        assert "STA      'info-asyncio' asyncio on aptrt-sta-info-asyncio" in out
        assert "STA      'info-trio' trio on aptrt-sta-info-trio" in out
        assert "MTA      'MTA' up to" in out

    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["--version"]) == 0
        assert capsys.readouterr().out == f"aptrt {aptrt.__version__}\n"

    def test_bench_passes_its_arguments_on(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[list[str]] = []
        package = types.ModuleType("benchmarks")
        entry = types.ModuleType("benchmarks.__main__")

        def bench_main(argv: list[str]) -> int:
            calls.append(argv)
            return 0

        entry.main = bench_main  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "benchmarks", package)
        monkeypatch.setitem(sys.modules, "benchmarks.__main__", entry)
        assert main(["bench", "--quick", "--only", "aptrt/*,4a", "--no-json"]) == 0
        assert main(["bench", "--help"]) == 0
        assert calls == [["--quick", "--only", "aptrt/*,4a", "--no-json"], ["--help"]]

    def test_bench_without_the_checkout(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setitem(sys.modules, "benchmarks", None)  # import fails
        assert main(["bench"]) == 2
        assert "source checkout" in capsys.readouterr().out

    def test_bench_list_from_the_checkout(self, capsys: pytest.CaptureFixture[str]) -> None:
        pytest.importorskip("benchmarks.__main__")
        assert main(["bench", "--list"]) == 0
        assert "aptrt/" in capsys.readouterr().out

    def test_unknown_arguments(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as info:
            main(["info", "--bogus"])
        assert info.value.code == 2
        assert "unrecognized arguments: --bogus" in capsys.readouterr().err


class TestProcess:
    """The real entry points, in a child process."""

    def _env(self) -> dict[str, str]:
        return {**os.environ, "COLUMNS": "100", "PYTHONUNBUFFERED": "1"}

    def test_python_m_aptrt(self, tmp_path: Path) -> None:
        target = tmp_path / "ball.png"
        argv = ["demo", "ball", "--headless", "--frames", "5", "--save", str(target)]
        done = subprocess.run(
            [sys.executable, "-m", "aptrt", *argv],
            capture_output=True,
            text=True,
            timeout=60,
            env=self._env(),
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("saw E_FAIL") == 4
        read_png(target.read_bytes())

    def test_console_script(self) -> None:
        script = Path(sys.executable).with_name("aptrt")
        if not script.exists():
            pytest.skip("the aptrt console script is not installed next to this Python")
        done = subprocess.run(
            [str(script), "info"], capture_output=True, text=True, timeout=60, env=self._env(), check=False
        )
        assert done.returncode == 0, done.stderr
        assert "DllBall.1" in done.stdout

    @pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
    def test_ctrl_c_stops_it_cleanly(self, tmp_path: Path) -> None:
        target = tmp_path / "ball.svg"
        child = subprocess.Popen(
            [sys.executable, "-m", "aptrt", "demo", "ball", "--headless", "--seconds", "0", "--save", str(target)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._env(),
        )
        try:
            assert child.stderr is not None
            lines: list[str] = []
            while not lines or "painting headless" not in lines[-1]:  # the cue: the first frame is painted
                line = child.stderr.readline()
                assert line, f"the demo ended without painting: {''.join(lines)}"
                lines.append(line)
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
        assert child.returncode == 130, err
        assert "Traceback" not in err
        assert "interrupted (Ctrl-C): the painter killed the ball" in out
        assert out.count("saw E_FAIL") == 4
        assert ElementTree.fromstring(target.read_bytes()).tag == f"{SVG}svg"
