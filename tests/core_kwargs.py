"""Small configurations of every core, shared by the core, replay and RLlib tests.

Each is small enough for a CPU test yet exercises the mechanism: window cores get memories
shorter than the test sequences (so windows slide and wrap; local_xl's memory is window * max
dilation = 6 steps, with a dilated head and global tokens), the block-recurrent core a block that
does not divide the sequence length.
"""

from memrl.models import cores_with_state, stateful_cores

SMALL_CORE_KWARGS: dict[str, dict] = {
    "gru": dict(hidden_size=16, num_layers=2),
    "lstm": dict(hidden_size=16, num_layers=2),
    "trxl": dict(d_model=16, num_layers=2, num_heads=2, memory_len=6, d_ff=32),
    "gtrxl": dict(d_model=16, num_layers=2, num_heads=2, memory_len=6, d_ff=32),
    "relit": dict(d_model=16, num_layers=2, num_heads=2, nu=2, d_ff=32),
    "arelit": dict(d_model=16, num_layers=2, num_heads=2, nu=2, r=2, d_ff=32),
    "brt": dict(d_model=16, num_layers=2, num_heads=2, block_len=5, num_state=3, d_ff=32),
    "local_xl": dict(
        d_model=16, num_layers=2, num_heads=2, window=3, dilations=(1, 2), num_global=2, d_ff=32
    ),
    "mlp": dict(hidden_size=16, num_layers=2),
}

# Extra variants that must pass the same contract (multi-query attention, the references' GTrXL
# embedding, the linear cores' relu feature map, AReLiT's long-memory write gates).
VARIANTS: list[tuple[str, dict]] = [
    ("trxl", dict(SMALL_CORE_KWARGS["trxl"], kv_heads=1)),
    ("gtrxl", dict(SMALL_CORE_KWARGS["gtrxl"], kv_heads=1)),
    ("gtrxl", dict(SMALL_CORE_KWARGS["gtrxl"], embedding_relu=True)),  # the references' embedding
    ("local_xl", dict(SMALL_CORE_KWARGS["local_xl"], kv_heads=1)),
    ("relit", dict(SMALL_CORE_KWARGS["relit"], feature_map="relu")),  # the authors' kernel
    ("arelit", dict(SMALL_CORE_KWARGS["arelit"], feature_map="relu", embedding_relu=False)),
    ("arelit", dict(SMALL_CORE_KWARGS["arelit"], write_gate_bias=-4.0)),  # the learning suites'
]

# Derived from the registry, so a new core joins the tests that fit its state.
WINDOW_CORES: tuple[str, ...] = cores_with_state("window")
STATEFUL_CORES: tuple[str, ...] = stateful_cores()
