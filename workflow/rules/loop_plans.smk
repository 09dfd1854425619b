# Beyond the paper: ELT runs sampled at the profile's loop schedules and early-exit rules
# (loop_plans), evaluated like a fixed loop count, and gathered into one table with their cost.


use rule evaluate as evaluate_plan with:
    output:
        samples=f"{WORK}/samples/{{run}}/P_{{plan}}.npz",
        record=f"{WORK}/eval/{{run}}/P_{{plan}}.json",
        features=f"{WORK}/eval/{{run}}/P_{{plan}}_features.npz",
    params:
        plan=lambda wc: PLANS[wc.run][wc.plan],  # the other params are evaluate's: the fixed-L samples' seed and labels, paired draws
        steps=None,  # a loop plan samples with the run's own steps
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
