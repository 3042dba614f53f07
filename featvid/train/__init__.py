"""The trainer: a dataset -> a run folder (featvid.formats.run) of per-frame sparse grids and one tiny MLP.

    train(video, run_dir, config)   coarse pass, GOPs, then frame after frame (featvid.train.train)
    preset(name, **overrides)       a TrainConfig from the named preset (featvid.train.config;
                                    why its defaults are what they are: docs/training.md)
    TrainSummary.of(run)            a trained run in a few figures (featvid.train.summary)
"""
