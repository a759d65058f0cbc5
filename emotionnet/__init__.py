"""EmotionNet: training, data, evaluation and Hub tooling around the GReFEL model in `modeling_grefel`."""
