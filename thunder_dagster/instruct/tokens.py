"""The base's tokenizer, built with `tokenizers` from the vocabulary and merges its GGUF file
holds (byte-level BPE with single digits split off, as the base was trained), and its chat
template: each message as `<|im_start|>role\\ncontent<|im_end|>\\n`, then the assistant's
turn opened for the answer.
"""

from dataclasses import dataclass
from typing import Literal

from thunder_dagster.instruct.base import BaseFile

CONTROL = 3  # GGUF's token type for control tokens (the chat markers among them)
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


class BaseTokenizer:
    def __init__(self, base: BaseFile):
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        tokens, merges, types = base.tokenizer_tables()
        vocab = {token: number for number, token in enumerate(tokens)}
        pairs = [tuple(merge.split(" ", 1)) for merge in merges]
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
        tokenizer.decoder = decoders.ByteLevel()
        # A user's text is encoded with no special tokens recognised, so that typing
        # "<|im_end|>" cannot close a turn; the template puts the markers in by id.
        special = [tokens[number] for number, kind in enumerate(types) if kind == CONTROL]
        self._tokenizer = tokenizer
        self.vocab_size = len(tokens)
        self.start_id, self.end_id = vocab[IM_START], vocab[IM_END]
        self.special_ids = frozenset(vocab[token] for token in special)

    def encode(self, text: str) -> list[int]:
        """Plain text's ids; marker strings in it stay text."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(
            [number for number in ids if number not in self.special_ids],
            skip_special_tokens=True,
        )

    def chat_prompt(self, messages: list[Message]) -> list[int]:
        """The template's token ids for `messages`, ending with the assistant's turn opened;
        the default system message leads when the messages bring none."""
        if not messages or messages[0].role != "system":
            messages = [Message("system", DEFAULT_SYSTEM), *messages]
        ids: list[int] = []
        for message in messages:
            ids += [self.start_id, *self.encode(f"{message.role}\n{message.content}")]
            ids += [self.end_id, *self.encode("\n")]
        return [*ids, self.start_id, *self.encode("assistant\n")]
