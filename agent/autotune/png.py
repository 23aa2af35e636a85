"""Tiny RGB canvas and PNG writer (zlib + struct only): rectangles, lines, a 3x5 pixel font."""

import struct
import zlib

# 3x5 glyphs, rows top to bottom, 3 bits per row (MSB = left column).
_FONT = {
    '0': (7, 5, 5, 5, 7), '1': (2, 6, 2, 2, 7), '2': (7, 1, 7, 4, 7), '3': (7, 1, 7, 1, 7),
    '4': (5, 5, 7, 1, 1), '5': (7, 4, 7, 1, 7), '6': (7, 4, 7, 5, 7), '7': (7, 1, 2, 2, 2),
    '8': (7, 5, 7, 5, 7), '9': (7, 5, 7, 1, 7), '.': (0, 0, 0, 0, 2), '-': (0, 0, 7, 0, 0),
    '/': (1, 1, 2, 4, 4), ':': (0, 2, 0, 2, 0), ' ': (0, 0, 0, 0, 0), '%': (5, 1, 2, 4, 5),
    'A': (2, 5, 7, 5, 5), 'B': (6, 5, 6, 5, 6), 'C': (7, 4, 4, 4, 7), 'D': (6, 5, 5, 5, 6),
    'E': (7, 4, 6, 4, 7), 'F': (7, 4, 6, 4, 4), 'G': (7, 4, 5, 5, 7), 'H': (5, 5, 7, 5, 5),
    'I': (7, 2, 2, 2, 7), 'J': (1, 1, 1, 5, 7), 'K': (5, 5, 6, 5, 5), 'L': (4, 4, 4, 4, 7),
    'M': (5, 7, 7, 5, 5), 'N': (6, 5, 5, 5, 5), 'O': (7, 5, 5, 5, 7), 'P': (7, 5, 7, 4, 4),
    'Q': (7, 5, 5, 7, 1), 'R': (7, 5, 6, 5, 5), 'S': (7, 4, 7, 1, 7), 'T': (7, 2, 2, 2, 2),
    'U': (5, 5, 5, 5, 7), 'V': (5, 5, 5, 5, 2), 'W': (5, 5, 7, 7, 5), 'X': (5, 5, 2, 5, 5),
    'Y': (5, 5, 2, 2, 2), 'Z': (7, 1, 2, 4, 7), '(': (1, 2, 2, 2, 1), ')': (4, 2, 2, 2, 4),
    # lower case only where the unit needs it: mV (millivolt) is not MV (megavolt)
    'm': (0, 0, 7, 7, 5), 'z': (0, 7, 1, 2, 7),
}


class Canvas:
    def __init__(self, width, height, bg=(255, 255, 255)):
        self.w = width
        self.h = height
        self.px = bytearray(bytes(bg) * (width * height))

    def set(self, x, y, rgb):
        if 0 <= x < self.w and 0 <= y < self.h:
            i = 3 * (y * self.w + x)
            self.px[i:i + 3] = bytes(rgb)

    def rect(self, x, y, w, h, rgb):
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.w, x + w), min(self.h, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        row = bytes(rgb) * (x1 - x0)
        for yy in range(y0, y1):
            i = 3 * (yy * self.w + x0)
            self.px[i:i + len(row)] = row

    def frame(self, x, y, w, h, rgb):
        self.rect(x, y, w, 1, rgb)
        self.rect(x, y + h - 1, w, 1, rgb)
        self.rect(x, y, 1, h, rgb)
        self.rect(x + w - 1, y, 1, h, rgb)

    def line(self, x0, y0, x1, y1, rgb, width=1):
        """Bresenham line."""
        x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx = 1 if x0 < x1 else -1
        sy = 1 if y0 < y1 else -1
        err = dx + dy
        while True:
            self.rect(x0 - width // 2, y0 - width // 2, width, width, rgb)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x, y, s, rgb=(0, 0, 0), scale=2):
        """Text in the 3x5 font (upper case, plus the lower-case letters units need: mV, MHz);
        returns the width drawn."""
        cx = x
        for ch in str(s):
            g = _FONT.get(ch) or _FONT.get(ch.upper(), _FONT[' '])
            for r, bits in enumerate(g):
                for c in range(3):
                    if bits & (4 >> c):
                        self.rect(cx + c * scale, y + r * scale, scale, scale, rgb)
            cx += 4 * scale
        return cx - x

    def png_bytes(self):
        raw = bytearray()
        stride = 3 * self.w
        for y in range(self.h):
            raw.append(0)
            raw += self.px[y * stride:(y + 1) * stride]

        def chunk(kind, data):
            c = struct.pack('>I', len(data)) + kind + data
            return c + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF)

        ihdr = struct.pack('>IIBBBBB', self.w, self.h, 8, 2, 0, 0, 0)
        return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr)
                + chunk(b'IDAT', zlib.compress(bytes(raw), 9)) + chunk(b'IEND', b''))

    def save(self, path):
        with open(path, 'wb') as f:
            f.write(self.png_bytes())


def colormap(t):
    """0..1 -> blue, cyan, green, yellow, red."""
    t = 0.0 if t != t else max(0.0, min(1.0, t))
    stops = ((0, 0, 160), (0, 170, 255), (40, 200, 60), (250, 220, 0), (220, 30, 20))
    x = t * (len(stops) - 1)
    i = min(int(x), len(stops) - 2)
    w = x - i
    a, b = stops[i], stops[i + 1]
    return tuple(int(a[k] + (b[k] - a[k]) * w) for k in range(3))
