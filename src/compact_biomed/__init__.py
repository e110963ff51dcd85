"""compact-biomed: reproduce 'On the Effectiveness of Compact Biomedical Transformers' end to end."""

__version__ = "0.1.0"

# The label the loss skips (torch's cross-entropy default): unmasked positions in pre-training, special tokens and
# untrained pieces in NER fine-tuning.
IGNORE_INDEX = -100


def one_gpu(args):
    """Keep a process's Trainer to one GPU (in place; returns `args`). A process that sees several (a local job on a
    workstation with several GPUs) would get a Trainer that wraps the model in DataParallel, multiplying the batch by
    the GPU count (fine-tuning's 16 would be 64 on 4 GPUs) and splitting pre-training's collator indices from their
    rows. Pre-training spreads over several GPUs through torchrun, a process each (pretrain.launch); fine-tuning
    uses one."""
    import torch

    if torch.cuda.device_count() > 1 and args.n_gpu > 1:
        args._n_gpu = 1
    return args
