"""Result files: the one writer (`results.write_result`), every result kind's schema and renderer
(`registry`, `kinds/`), figures and Markdown helpers, and portable paths (`paths`).

Above `core`, `data` and `models`, beside `metrics`; below `attacks`, `eval` and `pipeline`, so a
renderer works from the result's JSON alone.
"""
