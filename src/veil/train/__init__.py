"""Training: the classifier (`classifier`) and the obfuscator/deobfuscator pair (`obfuscator`: the
loop; `recipes`: its recipes and config; `adversarial`: one step, its schedules and evaluation;
`warm_start`: the warm starts; `curve`: the learning curve), their run folders (`runs`) and the
distributed helpers (`engine`); `veil train` is `cli`.
"""
