"""The bottom layer: the rules every other part of veil shares, each in one place.

Nothing here imports any other part of veil, and `answers`, `eightbit`, `files`, `text` and
`wire` import neither torch nor anything beyond numpy, so the torch-free edge client can use
them.

- `eightbit`: what leaves the device is round(clip(x, 0, 1) * 255) as uint8
- `files`: atomic writes and sha256s
- `checkpoint`: torch checkpoints, written atomically and verified on load
- `runtime`: devices, precision, seeds, progress bars, the environment a number came from
- `allocator`: glibc malloc thresholds (entry points only)
- `markdown`: the Markdown table every report uses
- `options`: the command-line options commands share, and the one place they become settings
- `env`: every environment variable veil reads
- `text`: outside text made safe to print (escaped, one line, bounded)
- `wire`: the edge-to-server format (PNG signature, where an export's manifest lives)
- `answers`: what the server answers (predictions, errors), built by serve/, checked by edge/
"""
