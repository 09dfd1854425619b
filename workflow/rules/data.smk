# Real data for the metrics: the held-out reference set, the domain classifier, cached statistics.


rule prepare_reference:
    output:
        images=f"{WORK}/data/reference.npz",
        manifest=f"{WORK}/data/manifest.json",
    params:
        data=config["data"],
    log:
        f"{WORK}/logs/prepare_reference.log",
    script:
        "../scripts/prepare_reference.py"


rule train_classifier:
    output:
        model=f"{WORK}/features/classifier.pt",
        record=f"{WORK}/features/classifier.json",
    params:
        data=config["data"],
        settings=config["classifier"],
    threads: config["threads"]
    log:
        f"{WORK}/logs/train_classifier.log",
    script:
        "../scripts/train_classifier.py"


rule reference_features:
    input:
        images=rules.prepare_reference.output.images,
        classifier=rules.train_classifier.output.model,
    output:
        f"{WORK}/features/reference_features.npz",
    params:
        fid_reference_samples=config["metrics"].get("fid_reference_samples"),
    threads: config["threads"]
    log:
        f"{WORK}/logs/reference_features.log",
    script:
        "../scripts/reference_features.py"
