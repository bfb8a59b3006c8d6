"""Offline training and export: profiler (FLYP + MIM) and User-VLM (align, sft, dpo).

    uservlm train profiler|align|sft|dpo --config config/training/<stage>.yaml [--set KEY=VALUE ...]
    uservlm export profiler|vlm ...

Heavy imports (torch, transformers, peft, trl) happen inside the stage modules, so importing
this package stays cheap.
"""
