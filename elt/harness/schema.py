"""The results schema, shared by the report, the regression check and the audit: the columns of
metrics.csv and loop_plans.csv, the quality metrics and which way is better, and how every plot draws
each family."""

# Quality metrics and their good direction. Image rows carry fid, fd_domain and kid; video rows fvd
# and fvd_domain (the other modality's columns are empty); class_accuracy is measured on both.
QUALITY = {
    "fid": "lower",
    "fd_domain": "lower",
    "kid": "lower",
    "fvd": "lower",
    "fvd_domain": "lower",
    "class_accuracy": "higher",
    "rule_share": "higher",  # scenes whose class is a rule (elt.data.shapes): the share of samples that keep it
    # the paper protocol's (paper_metrics.csv)
    "fid_adm": "lower",
    "fid_clean": "lower",
    "inception_score": "higher",
}
# The audit's primary metric per modality under the paper protocol (paper_metrics.csv): the paper's own.
PAPER_PRIMARY = {"image": "fid_adm", "video": "fvd"}
INTERVALS = [f"{m}{end}" for m in ("fid", "fd_domain", "fvd", "fvd_domain") for end in ("", "_ci_low", "_ci_high")]
# What an evaluation record contributes to a row of metrics.csv or loop_plans.csv.
EVALUATION_FIELDS = ("samples_per_second", *INTERVALS, "kid", "class_accuracy", "n_samples", "n_fid", "n_fvd")
# Measured only on data sets with an exact checker of their classes' rules (elt.data.shapes): their columns
# follow the fixed ones in a table with such rows, and are absent from one without.
RULE_FIELDS = ("rule_share", "rule_share_ci_low", "rule_share_ci_high")


def with_rule_fields(columns: list[str], rows: list[dict]) -> list[str]:
    """columns, and RULE_FIELDS after them where some row measured the rule."""
    return columns + [f for f in RULE_FIELDS if any(row.get(f) is not None for row in rows)]


def ruled(df):
    """The rows of a results table (a DataFrame) that measured their data set's rule; none where it has no column."""
    return df.dropna(subset=["rule_share"]) if "rule_share" in df else df.iloc[:0]


COLUMNS = [
    "run",
    "group",
    "family",
    "generator",
    "modality",
    "dataset",
    "width",
    "n_unique",
    "loops_train",
    "loops_eval",
    "depth",
    "unique_params",
    "total_params",
    "gflops_per_forward",
    "gflops_per_sample",
    "sampling_steps",
    "guidance",
    *EVALUATION_FIELDS,
    "seed",
]
# loop_plans.csv: one row per (ELT run, loop plan).
PLAN_COLUMNS = [
    "run",
    "group",
    "family",
    "generator",
    "modality",
    "loops_train",
    "plan",
    "plan_name",
    "gflops_per_sample",
    "loops_used_mean",
    "loops_used_per_step",
    *EVALUATION_FIELDS,
    "seed",
]

# The loop_plans.csv columns the audit reads.
PLAN_FIELDS = [
    "run",
    "group",
    "family",
    "plan",
    "plan_name",
    "gflops_per_sample",
    "loops_used_mean",
    "n_samples",
]  # of loop_plans.csv

# One colour and marker per family in every plot (matplotlib's default cycle, by family, not by panel).
FAMILY_STYLE = {
    "elt": ("C0", "o"),
    "looped": ("C1", "s"),
    "unshared": ("C2", "X"),
    "shallow": ("C4", "D"),
    "elt loop plan": ("crimson", "*"),
}
