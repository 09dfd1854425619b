#!/usr/bin/env bash
# Mutation testing of the method and resume code (`make mutants`): mutmut 3 mutates the functions below
# one change at a time and runs the unit tests that reach each one; a mutant the tests do not notice
# "survives". benchmarks/mutants_report.py then writes results/mutants.md: every function's counts and
# each survivor's diff with the reason it may survive (benchmarks/mutants_explained.yaml), and exits 1
# on a survivor nobody explained. Where and with which tests: [tool.mutmut] in pyproject.toml.
# About 40 minutes on 2 cores; not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
FUNCTIONS=(
  # ILSD: the loss, the student draw, lambda
  "elt.methods.ilsd.*"
  # MaskGIT: training inputs, losses, decoding
  "elt.methods.masked.xǁMaskedGeneratorǁtraining_inputs__*" "elt.methods.masked.xǁMaskedGeneratorǁgt_loss__*"
  "elt.methods.masked.xǁMaskedGeneratorǁdistill_loss__*" "elt.methods.masked.xǁMaskedGeneratorǁguided_logits__*"
  "elt.methods.masked.xǁMaskedGeneratorǁsample__*"
  # diffusion: schedule, forward process, losses, samplers
  "elt.methods.diffusion.x_logsnr_schedule__*" "elt.methods.diffusion.x_alpha_sigma__*" "elt.methods.diffusion.x_loss_weight__*"
  "elt.methods.diffusion.x_to_x0_eps__*" "elt.methods.diffusion.x_sample_loop__*" "elt.methods.diffusion.xǁDiffusionGeneratorǁtraining_inputs__*"
  "elt.methods.diffusion.xǁDiffusionGeneratorǁ_eps__*" "elt.methods.diffusion.xǁDiffusionGeneratorǁ_weighted_mse__*"
  "elt.methods.diffusion.xǁDiffusionGeneratorǁgt_loss__*" "elt.methods.diffusion.xǁDiffusionGeneratorǁdistill_loss__*"
  "elt.methods.diffusion.xǁDiffusionGeneratorǁsample__*"
  # training resume: the saved state, its restoration, the schedule and EMA it carries
  "elt.train.x_resume__*" "elt.train.x_save_checkpoint__*" "elt.train.x_learning_rate__*" "elt.train.xǁEMAǁupdate__*"
  # the audit's verdicts and intervals
  "elt.harness.audit.xǁStatisticǁjudge__*" "elt.harness.audit.x_log_interval__*" "elt.harness.audit.x_median_interval__*" "elt.harness.audit.x__judged__*"
  "elt.harness.audit.xǁComparisonǁratio__*" "elt.harness.audit.xǁComparisonǁextreme_ratio__*" "elt.harness.audit.xǁComparisonǁstatistic__*"
  # the regression check's decision
  "elt.harness.check.x_check__*" "elt.harness.check.x_per_row_test__*" "elt.harness.check.x__holm__*" "elt.harness.check.xǁCheckResultǁ*"
)
$BIN/python -c "import mutmut" 2>/dev/null || $BIN/python -m pip install -q mutmut==3.8.1
$BIN/mutmut run "${FUNCTIONS[@]}"
$BIN/python benchmarks/mutants_report.py "${FUNCTIONS[@]}"
