"""The auditor's report: one self-contained page (and PDF) computed from the verified log.

`compile_report` verifies the log and computes every figure in one streaming pass;
`write_html`, `write_pdf`, `figures_json` and `write_csv` render it. The report reads only
``log/`` and the log's public key, never a vault's local index, so a printed report is
anchored to a checkpoint that anyone can re-verify with `pcii audit verify`.
"""

from pcii_vault.report.audit import AuditReport, Verification, compile_report
from pcii_vault.report.data import figures_json, write_csv
from pcii_vault.report.figures import Period
from pcii_vault.report.page import HEADINGS, write_html
from pcii_vault.report.pdf import ensure_pdf_support, write_pdf

__all__ = [
    "HEADINGS",
    "AuditReport",
    "Period",
    "Verification",
    "compile_report",
    "ensure_pdf_support",
    "figures_json",
    "write_csv",
    "write_html",
    "write_pdf",
]
