"""`twinops twin report|promote|rollback` on the command line."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from twinops.modeling.models import TrainingJob, TwinVersion
from twinops.modeling.selectors import twin_promoted


def test_twin_report_json_prints_the_promoted_versions_evaluation_report(line, register) -> None:
    register(line, promotable=True)
    second = register(line, promotable=True)
    call_command("twin", "promote", "tanks", "1", "--reason", "first good one", stdout=io.StringIO())
    out = io.StringIO()
    call_command("twin", "report", "tanks", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    assert (printed["version"], printed["status"]) == (1, "promoted")  # promoted, although v2 is newer
    assert set(printed["report"]["twin"]["nrmse"]) == {"h1", "h5", "h20", "free_run"}
    assert printed["report"]["baselines"]["linear_arx"]["nrmse"]["free_run"].keys() == {
        "upper_level_m",
        "lower_level_m",
    }
    assert printed["report"] == second.report  # both versions come from the same trained twin


def test_twin_report_without_a_promoted_version_prints_the_latest(line, register) -> None:
    register(line)
    register(line)
    out = io.StringIO()
    call_command("twin", "report", "tanks", "--json", stdout=out)
    assert json.loads(out.getvalue())["version"] == 2


def test_twin_promote_and_rollback_on_the_command_line(line, register) -> None:
    register(line, promotable=True)
    register(line, promotable=False)
    with pytest.raises(CommandError, match="promotion refused: v2 is not promotable"):
        call_command("twin", "promote", "tanks", "2", "--reason", "try", stdout=io.StringIO())
    register(line, promotable=True)
    call_command("twin", "promote", "tanks", "1", "--reason", "a", stdout=io.StringIO())
    call_command("twin", "promote", "tanks", "3", "--reason", "b", stdout=io.StringIO())
    out = io.StringIO()
    call_command("twin", "rollback", "tanks", "--reason", "v3 drifts", stdout=out)
    assert "v1 is promoted again" in out.getvalue() and twin_promoted(line=line).version == 1


def test_twin_report_on_a_line_without_twins_says_so(line) -> None:
    with pytest.raises(CommandError, match="tanks has no trained twin"):
        call_command("twin", "report", "tanks", "--json", stdout=io.StringIO())


def test_twin_train_wait_trains_here_on_the_chosen_window_with_progress_on_stderr(line, ingest, tanks, tiny) -> None:
    data = ingest(line, tanks(1500))
    start, end = data["times"][100], data["times"][1400]
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "twin",
        "train",
        "tanks",
        "--wait",
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
        "--config",
        json.dumps(tiny),
        stdout=out,
        stderr=err,
    )
    assert "registered tanks twin v1" in out.getvalue()
    assert "epoch 2/2" in err.getvalue() and "] epoch" in err.getvalue()
    assert "epoch 2/2 " in err.getvalue() and "· choosing the state estimate…" in err.getvalue()  # after the epochs
    version = TwinVersion.objects.get(line=line)
    assert (version.data_start, version.data_rows) == (start, 1300)  # [start, end): the window asked for
    assert version.job.requested_by_label == "system:cli"


def test_twin_train_refuses_an_unknown_config_field(line) -> None:
    with pytest.raises(CommandError, match="unknown \\['epoch'\\]"):
        call_command("twin", "train", "tanks", "--config", '{"epoch": 3}', stdout=io.StringIO())
    assert not TrainingJob.objects.exists()
