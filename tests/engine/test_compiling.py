from mlmkit.engine.compiling import repeated_layers
from mlmkit.token_mlm.model import SparseMLM


def test_repeated_layers_finds_the_encoder_stack(tiny_bert):
    layers = repeated_layers(SparseMLM(tiny_bert))
    assert layers == list(tiny_bert.bert.encoder.layer)
    assert len(layers) == tiny_bert.config.num_hidden_layers
