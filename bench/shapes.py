"""Model shapes the benchmarks build with random weights (architecture facts of the public
checkpoints; no weights are involved)."""

# PaliGemma 2 3B at 224 px (paligemma2-3b-*-224): SigLIP So400m/14 (256 image tokens) + Gemma 2 2B.
PALIGEMMA2_3B_VISION = dict(
    hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
    image_size=224, patch_size=14, vision_use_head=False,
)  # fmt: skip
PALIGEMMA2_3B_TEXT = dict(
    vocab_size=257216, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
    num_attention_heads=8, num_key_value_heads=4, head_dim=256, sliding_window=4096,
    query_pre_attn_scalar=256, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
)  # fmt: skip
