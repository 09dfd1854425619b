"""Where a pipeline run's time went, read from Snakemake's own log."""

import json

import pandas as pd
import pytest

from elt.cli import main
from elt.errors import UserError
from elt.harness.job_seconds import job_seconds, job_seconds_by_part

LOG = """Building DAG of jobs...
[Mon Nov 30 01:00:00 2026]
localrule train:
    output: work/runs/a/checkpoint.pt
    log: work/logs/train/a.log
    jobid: 3
    reason: Missing output files
    wildcards: run=a
[Mon Nov 30 01:00:00 2026]
rule evaluate:
    output: work/eval/a/L1.json
    jobid: 7
[Mon Nov 30 01:01:40 2026]
Finished jobid: 3 (Rule: train)
1 of 3 steps (33%) done
[Mon Nov 30 01:01:40 2026]
localrule train:
    output: work/runs/b/checkpoint.pt
    jobid: 4
[Mon Nov 30 01:01:50 2026]
Finished jobid: 7 (Rule: evaluate)
[Mon Nov 30 01:03:00 2026]
Finished jobid: 4 (Rule: train)
[Mon Nov 30 01:03:00 2026]
localrule all:
    jobid: 0
[Mon Nov 30 01:03:00 2026]
Finished jobid: 0 (Rule: all)
"""


def test_job_seconds_per_rule_and_wall_time():
    table, jobs, wall = job_seconds(LOG)
    assert table.to_dict("records") == [
        {"rule": "train", "jobs": 2, "job_seconds": 180.0, "share": pytest.approx(180 / 290)},
        {"rule": "evaluate", "jobs": 1, "job_seconds": 110.0, "share": pytest.approx(110 / 290)},
    ]
    assert wall == 180.0
    assert jobs[["rule", "wildcards", "seconds"]].values.tolist() == [
        ["evaluate", "", 110.0],
        ["train", "run=a", 100.0],
        ["train", "", 80.0],
    ]


def test_job_seconds_per_part_of_the_grid():
    jobs = pd.DataFrame(
        {
            "wildcards": [
                "run=masked-elt-XS-2x3-s0",
                "run=masked-elt-XS-2x3-s0, loops=2",
                "group=masked-XS-2x3-s0",
                "run=video_diffusion-elt-XS-2x2-s0",
                "dataset=digits",
                "",
            ],
            "seconds": [100.0, 10.0, 5.0, 60.0, 20.0, 5.0],
        }
    )
    table = job_seconds_by_part(jobs)
    assert table[["part", "jobs", "job_seconds"]].values.tolist() == [
        ["group masked", 3, 115.0],
        ["group video_diffusion", 1, 60.0],
        ["dataset digits", 1, 20.0],
        ["whole grid", 1, 5.0],
    ]
    assert table["share"].sum() == pytest.approx(1.0)


def test_job_seconds_command_writes_its_table(tmp_path, capsys):
    (tmp_path / "run.snakemake.log").write_text(LOG)
    main(["job-seconds", str(tmp_path / "run.snakemake.log"), "--out", str(tmp_path / "job_seconds.md")])
    written = (tmp_path / "job_seconds.md").read_text()
    assert "| train | 2 | 180 | 62% |" in written and "3 jobs, 290 job-seconds, 180 s" in written
    assert "| evaluate |  | 0 s | 110 |" in written and "| train | run=a | 0 s | 100 |" in written
    assert "| group a | 1 | 100 | 34% |" in written and "| whole grid | 2 | 190 | 66% |" in written


def test_a_log_without_finished_jobs_is_refused():
    with pytest.raises(UserError, match="no finished job"):
        job_seconds("Building DAG of jobs...\nNothing to be done.\n")


def test_job_seconds_lists_the_training_speeds_of_the_runs_work_folder(tmp_path, capsys):
    (tmp_path / "run.snakemake.log").write_text(LOG)
    for run, speed in (("a", 6.5), ("b", 20.25)):
        (tmp_path / "work/runs" / run).mkdir(parents=True)
        (tmp_path / "work/runs" / run / "train.json").write_text(json.dumps({"steps_per_second": speed}))
    main(
        [
            "job-seconds",
            str(tmp_path / "run.snakemake.log"),
            "--out",
            str(tmp_path / "t.md"),
            "--work",
            str(tmp_path / "work"),
        ]
    )
    written = (tmp_path / "t.md").read_text()
    assert "| a | 6.50 |" in written and "| b | 20.25 |" in written
    with pytest.raises(SystemExit):
        main(["job-seconds", str(tmp_path / "run.snakemake.log"), "--work", str(tmp_path)])
    assert "no finished training run under" in capsys.readouterr().err
