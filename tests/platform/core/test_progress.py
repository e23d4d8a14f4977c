"""Progress bars go to stderr, which Django's commands style as errors on a terminal: the bars must stay plain."""

from __future__ import annotations

import io

from django.core.management.base import OutputWrapper
from django.core.management.color import color_style

from twinops.core.progress import ProgressBar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_on_a_terminals_stderr_is_not_drawn_in_bold_red(monkeypatch) -> None:
    monkeypatch.delenv("DJANGO_COLORS", raising=False)
    monkeypatch.setattr("django.core.management.color.supports_color", lambda: True)
    stream = _Terminal()
    err = OutputWrapper(stream)
    err.style_func = color_style(force_color=True).ERROR  # what BaseCommand does to self.stderr
    err.write("an error")
    assert "\x1b[" in stream.getvalue()  # errors still stand out
    stream.seek(0), stream.truncate()
    bar = ProgressBar(err, label="import   vdv-reactor")
    bar(50, 100)
    bar(100, 100)
    bar.close()
    text = stream.getvalue()
    assert "\x1b[" not in text, repr(text)
    assert "import   vdv-reactor [###############...............]  50.0%  50/100" in text and "100.0%" in text
