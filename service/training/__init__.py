"""Training iMOS models: XMem's staged recipe (``imos train``) and adapter fine-tuning (``imos finetune``).

config: the frozen TrainConfig read from YAML; sources / clips / pseudo / synthetic / data: the
training clips; forward / losses: the differentiable XMem training pass; loop / trainer / finetune:
optimisation, checkpoints, periodic dev-subset evaluation and the model-repository entry.
"""
