# Real data for the metrics, per dataset of the profile: the held-out reference set, the domain
# classifier, cached reference statistics; and, for masked groups on VQ codes, the tokenizer.


rule prepare_reference:
    output:
        images=f"{WORK}/data/{{dataset}}/reference.npz",
        manifest=f"{WORK}/data/{{dataset}}/manifest.json",
    params:
        data=lambda wc: config["datasets"][wc.dataset],
    log:
        f"{WORK}/logs/prepare_reference/{{dataset}}.log",
    script:
        "../scripts/prepare_reference.py"


rule train_classifier:
    output:
        model=f"{WORK}/features/{{dataset}}/classifier.pt",
        record=f"{WORK}/features/{{dataset}}/classifier.json",
    params:
        data=lambda wc: config["datasets"][wc.dataset],
        settings=config["classifier"],
    threads: config["threads"]
    log:
        f"{WORK}/logs/train_classifier/{{dataset}}.log",
    script:
        "../scripts/train_classifier.py"


rule reference_features:
    input:
        images=rules.prepare_reference.output.images,
        classifier=rules.train_classifier.output.model,
    output:
        f"{WORK}/features/{{dataset}}/reference_features.npz",
    params:
        settings=config["metrics"],
    threads: config["threads"]
    log:
        f"{WORK}/logs/reference_features/{{dataset}}.log",
    script:
        "../scripts/reference_features.py"


rule train_tokenizer:
    output:
        tokenizer=grid.codec_paths(WORK, "{dataset}")["tokenizer"],  # the paths runs name in codec:
        record=f"{WORK}/tokenizers/{{dataset}}/tokenizer.json",
        tokens=grid.codec_paths(WORK, "{dataset}")["tokens"],
    params:
        data=lambda wc: config["datasets"][wc.dataset],
        settings=lambda wc: config["tokenizers"][wc.dataset],
    threads: config["threads"]
    log:
        f"{WORK}/logs/train_tokenizer/{{dataset}}.log",
    script:
        "../scripts/train_tokenizer.py"
