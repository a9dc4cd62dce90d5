"""AI feedback: judge prompts, parsers, judges, the judgment cache and the Ray Data fan-out.

* ``templates`` / ``parsers`` — versioned prompts and robust verdict parsing.
* ``judges.PairwiseJudge`` / ``judges.RubricJudge`` — LLM judges over any engine.
* ``config.JudgeConfig`` / ``config.build_judge`` — judges from config (``kind`` selector).
* ``cache.JudgmentCache`` — sqlite, WAL, safe for concurrent actors.
* ``pipeline.label_pairs`` / ``pipeline.generate_candidates`` — Ray Data fan-out.
* ``agreement.judge_agreement`` — how far a judge agrees with reference labels.
* ``simulated`` — the simulated labeller (clearly named "simulated" in outputs).
"""
