"""One look for every figure: method colours and labels shared across figures, and PNG + PDF saving."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from dictsr_core.atomic import atomic_write_bytes

# the same method has the same colour in every figure (Okabe-Ito, readable in grey print and by colour-blind readers)
METHOD_COLORS = {
    "LR": "#999999",
    "bicubic": "#E69F00",
    "paired-bicubic": "#56B4E9",
    "oracle": "#009E73",
    "dictsr": "#D55E00",
    "plain-realesrgan-deg": "#0072B2",
    "plain-noise-injection": "#CC79A7",
    "realesrgan-x4plus": "#332288",
    "realsr-df2k": "#882255",
    "HR": "#000000",
}
METHOD_LABELS = {"LR": "LR", "bicubic": "Bicubic", "paired-bicubic": "Paired (bicubic LR)", "oracle": "Paired (oracle LR)",
                 "dictsr": "DictSR", "HR": "HR (GT)", "plain-realesrgan-deg": "PlainSR + Real-ESRGAN degradation",
                 "plain-noise-injection": "PlainSR + noise injection", "realesrgan-x4plus": "Real-ESRGAN (published)",
                 "realsr-df2k": "RealSR (published)"}
FALLBACK_COLORS = ("#0072B2", "#CC79A7", "#F0E442", "#332288", "#882255")


def method_color(method: str) -> str:
    """A fixed colour per method; unknown names (ablations) get a stable colour from the fallback cycle."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return FALLBACK_COLORS[sum(map(ord, method)) % len(FALLBACK_COLORS)]


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def save_figure(figure: Figure, directory, name: str, dpi: int = 150, formats=("png", "pdf")) -> list[Path]:
    """Write DIRECTORY/NAME.png and .pdf atomically (a reader never sees half a file); returns the paths."""
    import io

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        buffer = io.BytesIO()
        figure.savefig(buffer, format=fmt, dpi=dpi)
        paths.append(atomic_write_bytes(directory / f"{name}.{fmt}", buffer.getvalue()))
    return paths
