"""Export of a trained obfuscator to ONNX for the edge (torch is needed here, not on the device)."""

from .onnx_export import ExportResult, export_obfuscator, fold_batchnorm, verify_parity

__all__ = ["ExportResult", "export_obfuscator", "fold_batchnorm", "verify_parity"]
