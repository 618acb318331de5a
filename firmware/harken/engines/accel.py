"""Which accelerator an engine runs on: the board profile's wish (``[board]``), checked in the
worker against what its installed libraries actually offer, with the reason reported.

- speech synthesis: onnxruntime's execution providers, in ``[board] providers`` order,
  those the installed onnxruntime offers, the CPU last;
- speech recognition: sherpa-onnx's provider, ``cuda`` only when CUDA is among those (a
  sherpa-onnx built without CUDA falls back to the CPU itself, and says so on stderr);
- the language model: llama.cpp's GPU layers, 0 when llama.cpp was built without GPU offload.

The wake word and the VADs stay on the CPU on every board: their models are a few hundred
kilobytes run every 80 ms, which a GPU's launch and copy costs would only slow down.
"""

from __future__ import annotations

from harken.config import Settings
from harken.hw import board


def onnx_providers(settings: Settings) -> tuple[tuple[str, ...], str]:
    """(providers for an onnxruntime session, best first; why)."""
    return board.choose_providers(settings.board.providers or (board.CPU,), board.offered_providers())


def sherpa_provider(settings: Settings) -> tuple[str, str]:
    providers, why = onnx_providers(settings)
    return ("cuda", why) if board.CUDA in providers else ("cpu", why)


def llm_gpu_layers(settings: Settings) -> tuple[int, str]:
    wanted = settings.board.gpu_layers
    return board.choose_gpu_layers(wanted, wanted > 0 and board.gpu_offload_supported())
