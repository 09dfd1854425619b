# One training job per run of the grid; resumes from its last checkpoint if interrupted.


rule train:
    input:
        codec_inputs,
    output:
        checkpoint=f"{WORK}/runs/{{run}}/checkpoint.pt",
        record=f"{WORK}/runs/{{run}}/train.json",
        config=f"{WORK}/runs/{{run}}/config.yaml",
    params:
        run_config=lambda wc: RUNS[wc.run],
    threads: config["threads"]
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=config["resources"]["mem_mb"],
        runtime=config["resources"]["runtime"],
    log:
        f"{WORK}/logs/train/{{run}}.log",
    script:
        "../scripts/train.py"

