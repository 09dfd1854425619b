# Sampling and every metric of one (run, loop count) in one job: the run's samples at that L (kept
# as .npz), then against its dataset's reference: images FID, fd_domain, KID; videos FVD,
# fvd_domain; both class accuracy, throughput and bootstrap intervals; and the features each
# Frechet distance was computed from. One process for both halves: a separate sampling job spent
# about as long starting (Python, torch: ~1.5 s) as sampling 800 images at L=1.


rule evaluate:
    input:
        checkpoint=rules.train.output.checkpoint,
        reference=of_runs_dataset(rules.reference_features.output[0]),
        classifier=of_runs_dataset(rules.train_classifier.output.model),
    output:
        samples=f"{WORK}/samples/{{run}}/L{{loops}}.npz",
        record=f"{WORK}/eval/{{run}}/L{{loops}}.json",
        features=f"{WORK}/eval/{{run}}/L{{loops}}_features.npz",  # what the audit's bootstrap resamples
    params:
        plan=None,  # a fixed loop count: the loops wildcard
        steps=lambda wc: grid.sampling_steps(SETTINGS[wc.run], int(wc.loops)),  # None: the run's own
        l_max=lambda wc: RUNS[wc.run]["model"]["loops"],
        num=lambda wc: SETTINGS[wc.run]["num_samples"],
        seed=config["metrics"]["sample_seed"],
        settings=config["metrics"],
        dataset=lambda wc: RUNS[wc.run]["data"]["dataset"],  # scenes with a rule checker add rule_share
    threads: config["threads"]
    log:
        f"{WORK}/logs/evaluate/{{run}}_L{{loops}}.log",
    script:
        "../scripts/evaluate.py"
