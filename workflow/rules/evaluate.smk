# Every metric of one (run, loop count), against its dataset's reference: images FID, fd_domain, KID;
# videos FVD, fvd_domain; both class accuracy, throughput and bootstrap intervals; and the features
# each Frechet distance was computed from.


rule evaluate:
    input:
        samples=rules.sample.output,
        reference=of_runs_dataset(rules.reference_features.output[0]),
        classifier=of_runs_dataset(rules.train_classifier.output.model),
    output:
        record=f"{WORK}/eval/{{run}}/L{{loops}}.json",
        features=f"{WORK}/eval/{{run}}/L{{loops}}_features.npz",  # what the audit's bootstrap resamples
    params:
        settings=config["metrics"],
    threads: config["threads"]
    log:
        f"{WORK}/logs/evaluate/{{run}}_L{{loops}}.log",
    script:
        "../scripts/evaluate.py"
