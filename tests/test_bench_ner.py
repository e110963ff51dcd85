"""bench_ner's plan of rows: the most telling first, so that a run cut by its budget keeps them."""

from argparse import Namespace

from conftest import load_benchmark


def test_plan_runs_the_loop_then_one_job_then_k_jobs_per_pad_unless_the_loop_is_skipped():
    plan = load_benchmark("bench_ner").plan
    args = Namespace(pad_multiples=None, jobs=[4], no_loop=False)
    every_pad = [("trainer", 64, 1), ("trainer", 64, 4), ("trainer", 8, 1), ("trainer", 8, 4)]
    assert plan(args, cuda=True) == [("loop", None, 1), *every_pad]  # each pad's 1-vs-k figure
    args.no_loop = True  # the 1-vs-k figure within a short budget
    assert plan(args, cuda=True) == every_pad
    assert plan(Namespace(pad_multiples=None, jobs=[1], no_loop=False), cuda=False) == [
        ("loop", None, 1),
        ("trainer", 1, 1),
    ]
    several = Namespace(pad_multiples=[64], jobs=[8, 4], no_loop=True)  # one row per k, the smaller k first
    assert plan(several, cuda=True) == [("trainer", 64, 1), ("trainer", 64, 4), ("trainer", 64, 8)]
