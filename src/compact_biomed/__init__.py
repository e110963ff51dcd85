"""compact-biomed: reproduce 'On the Effectiveness of Compact Biomedical Transformers' end to end."""

__version__ = "0.1.0"

# The label the loss skips (torch's cross-entropy default): unmasked positions in pre-training, special tokens and
# untrained pieces in NER fine-tuning.
IGNORE_INDEX = -100
