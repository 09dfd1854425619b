from elt.config import profile_device
from elt.eval.embedded import evaluate_samples
from elt.files import write_json
from elt.harness.rule_log import logged
from elt.methods.schedule import parse_plan
from elt.sample import sample

with logged(snakemake.log[0]):
    params, out = snakemake.params, snakemake.output
    loops = parse_plan(params.plan, params.l_max) if params.plan else int(snakemake.wildcards.loops)
    sample(
        snakemake.input.checkpoint,
        [loops],
        params.num,
        params.seed,
        out.samples,
        threads=snakemake.threads,
        sampling_steps=params.steps,
    )  # sets torch's threads for both
    write_json(
        out.record,
        evaluate_samples(
            out.samples,
            snakemake.input.reference,
            snakemake.input.classifier,
            params.settings,
            out.features,
            profile_device(snakemake.config),
            params.dataset,
        ),
    )
