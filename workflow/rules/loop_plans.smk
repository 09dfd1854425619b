# Beyond the paper: ELT runs sampled at the profile's loop schedules and early-exit rules
# (loop_plans), evaluated like a fixed loop count, and gathered into one table with their cost.


rule sample_plan:
    input:
        rules.train.output.checkpoint,
    output:
        f"{WORK}/samples/{{run}}/P_{{plan}}.npz",
    params:
        plan=lambda wc: PLANS[wc.run][wc.plan],
        l_max=lambda wc: RUNS[wc.run]["model"]["loops"],
        num=lambda wc: SETTINGS[wc.run]["num_samples"],
        seed=config["metrics"]["sample_seed"],  # the fixed-L samples' seed and labels: paired draws
    threads: config["threads"]
    log:
        f"{WORK}/logs/sample/{{run}}_P_{{plan}}.log",
    script:
        "../scripts/sample_plan.py"


use rule evaluate as evaluate_plan with:
    input:
        samples=rules.sample_plan.output,
        reference=of_runs_dataset(rules.reference_features.output[0]),
        classifier=of_runs_dataset(rules.train_classifier.output.model),
    output:
        record=f"{WORK}/eval/{{run}}/P_{{plan}}.json",
        features=f"{WORK}/eval/{{run}}/P_{{plan}}_features.npz",
    log:
        f"{WORK}/logs/evaluate/{{run}}_P_{{plan}}.log",


rule loop_plan_table:
    input:
        plan_files("eval"),
    output:
        f"{RESULTS}/loop_plans.csv",
    params:
        runs={run: RUNS[run] for run in PLANS},
    log:
        f"{WORK}/logs/loop_plan_table.log",
    script:
        "../scripts/loop_plan_table.py"
