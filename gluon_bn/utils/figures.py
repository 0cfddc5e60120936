"""Figures drawn and saved without pyplot: no matplotlib backend is chosen, so nothing here
changes the process that uses it (a Jupyter kernel keeps its inline backend)."""
import io
import os


def figure(**kwargs):
    """A new matplotlib Figure (figsize=..., ...), owned by no window and no backend."""
    from matplotlib.figure import Figure
    return Figure(**kwargs)


def image(fig, format='png', dpi=110):
    """The figure, laid out tightly, as the bytes of an image file of that format."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format=format, dpi=dpi)
    return buffer.getvalue()


def formats():
    """The image formats matplotlib can write ('png', 'svg', 'pdf', ...)."""
    from matplotlib.backend_bases import FigureCanvasBase
    return sorted(FigureCanvasBase.get_supported_filetypes())


def format_of(path):
    """The image format a file name asks for: its extension, lower case ('png' if none)."""
    return os.path.splitext(path)[1][1:].lower() or 'png'
