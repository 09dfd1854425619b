# Every metric of one (run, loop count): FID, fd_domain, KID, class accuracy, throughput, CIs.


rule evaluate:
    input:
        samples=rules.sample.output,
        reference=rules.reference_features.output,
        classifier=rules.train_classifier.output.model,
    output:
        f"{WORK}/eval/{{run}}/L{{loops}}.json",
    params:
        settings=config["metrics"],
    threads: config["threads"]
    log:
        f"{WORK}/logs/evaluate/{{run}}_L{{loops}}.log",
    script:
        "../scripts/evaluate.py"
