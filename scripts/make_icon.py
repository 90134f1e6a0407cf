#!/usr/bin/env python3
"""Draw electrum_joinmarket/joinmarket.png, the plugin's icon (manifest "icon"), with Qt.

Several coins (inputs) merging into a row of equal outputs, on a dark rounded square: drawn, not
copied from anywhere. Rerun after changing the drawing; the PNG is committed."""
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QColor, QGuiApplication, QImage, QPainter, QPainterPath, QPen

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def draw(size: int = 128) -> QImage:
    img = QImage(size, size, QImage.Format.Format_ARGB32)
    img.fill(Qt.GlobalColor.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = size / 128
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor("#1f2a44"))
    p.drawRoundedRect(QRectF(4 * s, 4 * s, 120 * s, 120 * s), 24 * s, 24 * s)
    # inputs: three coins of different sizes on the left
    coins = [(30, 34, 11, "#f7931a"), (26, 64, 15, "#f7b24a"), (32, 96, 9, "#f7931a")]
    # outputs: three equal coins on the right
    outs = [(98, 38), (98, 64), (98, 90)]
    pen = QPen(QColor("#9fb3d9"))
    pen.setWidthF(3.2 * s)
    p.setPen(pen)
    for x, y, r, _c in coins:
        for ox, oy in outs:
            path = QPainterPath(QPointF((x + r) * s, y * s))
            path.cubicTo(QPointF(64 * s, y * s), QPointF(64 * s, oy * s), QPointF((ox - 10) * s, oy * s))
            p.drawPath(path)
    p.setPen(Qt.PenStyle.NoPen)
    for x, y, r, c in coins:
        p.setBrush(QColor(c))
        p.drawEllipse(QPointF(x * s, y * s), r * s, r * s)
    for ox, oy in outs:
        p.setBrush(QColor("#ffffff"))
        p.drawEllipse(QPointF(ox * s, oy * s), 11 * s, 11 * s)
        p.setBrush(QColor("#f7931a"))
        p.drawEllipse(QPointF(ox * s, oy * s), 7 * s, 7 * s)
    p.end()
    return img


def main() -> int:
    app = QGuiApplication(sys.argv)  # noqa: F841
    out = os.path.join(ROOT, "electrum_joinmarket", "joinmarket.png")
    assert draw().save(out, "PNG")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
