"""Request and response bodies of the HTTP API; they are also its OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from longvec.runtime.core.chunking import Chunking
from longvec.runtime.core.modes import TABLE as MODE_TABLE
from longvec.runtime.embedder import DEFAULT_CHUNK_TOKENS, DEFAULT_MODE, Mode

EncodingFormat = Literal["float", "base64"]
PROMPT_NAME = (
    "One of the bundle's prompts by name (GET /info lists them), put before every text; an unknown name is a 422 "
    "listing the known ones. With neither prompt_name nor prompt, the server's default prompt applies "
    "(--default-prompt-name, else the bundle's default, else none), as in sentence-transformers."
)
PROMPT = 'Literal text put before every text (e.g. "query: "); "" means no prompt, not even the default.'

Vector = list[float] | str  # floats, or base64 of little-endian float32 (encoding_format="base64")


def _integral(value: object) -> object:
    """JSON Schema's `integer` includes 2.0; strict pydantic would not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Integer = Annotated[int, BeforeValidator(_integral)]


def _unicode(value: str) -> str:
    """A string that is valid Unicode: JSON's "\\ud800" escape gives Python a lone surrogate, which no UTF-8
    (or strict UTF-16) reader can take back."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"holds a lone surrogate at character {e.start}; send valid Unicode") from None
    return value


Unicode = Annotated[str, AfterValidator(_unicode)]


class _Strict(BaseModel):
    # strict: "5" is not an int and 1 is not a string; forbid: a misspelt option is an error, not ignored
    model_config = ConfigDict(strict=True, extra="forbid")


class EmbeddingRequest(_Strict):
    input: str | list[str] = Field(
        description="A text or a list of texts. Texts longer than the model's window are embedded whole "
        "(windows, stitched, pooled), never truncated. Token arrays are not accepted."
    )
    model: str | None = Field(
        None, description="The served model's name (GET /v1/models); another name is a 404. May be left out."
    )
    encoding_format: EncodingFormat = Field("float", description="float, or base64 of little-endian float32")
    dimensions: Integer | None = Field(
        None, ge=1, description="Matryoshka truncation: keep the first N components, then renormalize."
    )
    user: str | None = Field(None, description="Accepted for OpenAI compatibility and ignored.")
    prompt_name: Unicode | None = Field(None, description=PROMPT_NAME)
    prompt: Unicode | None = Field(None, description=PROMPT)


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Vector


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class DocumentIn(_Strict):
    id: Unicode = Field(description="The caller's identifier, echoed back.")
    text: str = Field(min_length=1)
    spans: list[Annotated[list[Integer], Field(min_length=2, max_length=2)]] | None = Field(
        None,
        description="Character spans [start, end) to use as chunks; they imply chunking='spans' (every document "
        "then needs spans).",
    )


class DocumentsRequest(_Strict):
    documents: list[DocumentIn] = Field(min_length=1)
    model: str | None = Field(None, description="The served model's name; another name is a 404. May be left out.")
    chunking: Chunking = "tokens"
    chunk_tokens: Integer = Field(
        DEFAULT_CHUNK_TOKENS,
        ge=1,
        description="Maximum tokens per chunk (tokens, sentences, paragraphs); the server sets a minimum (GET /info).",
    )
    mode: Mode = Field(
        DEFAULT_MODE,
        description="auto (default): the bundle's mode and stride (blend at 3/4 stride for short-context models); "
        + "; ".join(f"{m.name}: {m.summary}" for m in MODE_TABLE.values()),
    )
    window: Integer | None = Field(None, ge=1, description="Encoder window in positions (default: the server's).")
    stride: Integer | None = Field(
        None, ge=1, description="Window stride in tokens (default: the bundle's with mode auto, else half a window)."
    )
    sparse: bool = Field(False, description="Also return a sparse lexical vector per chunk, if the server has them.")
    encoding_format: EncodingFormat = "float"
    dimensions: Integer | None = Field(None, ge=1, description="Matryoshka truncation of every returned vector.")
    prompt_name: Unicode | None = Field(None, description=PROMPT_NAME)
    prompt: Unicode | None = Field(None, description=PROMPT)
    snap: bool = Field(
        False,
        description="Caller spans that start or end inside a token are widened to the whole token instead of "
        "refused; the returned start/end say so.",
    )

    @model_validator(mode="after")
    def _spans_imply_chunking(self) -> DocumentsRequest:
        """As in the library: documents with `spans` and no `chunking` are chunked by those spans."""
        if "chunking" not in self.model_fields_set and any(d.spans is not None for d in self.documents):
            self.chunking = "spans"
        return self


class SparseVector(BaseModel):
    indices: list[int]
    values: list[float]


class ChunkOut(BaseModel):
    index: int
    start: int = Field(description="First character of the chunk in the document text.")
    end: int = Field(description="One past the last character (half-open).")
    token_start: int
    token_end: int
    embedding: Vector
    sparse: SparseVector | None = None


class DocumentOut(BaseModel):
    object: Literal["document"] = "document"
    index: int
    id: str
    embedding: Vector
    n_tokens: int = Field(description="Content tokens in the text.")
    n_tokens_embedded: int = Field(description="Tokens that reached the encoder (fewer only for mode=truncate).")
    n_windows: int
    mode: str
    chunks: list[ChunkOut]


class DocumentsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentOut]
    model: str
    usage: Usage


class SearchDocument(_Strict):
    id: str = Field(description="The caller's identifier, echoed back in each hit.")
    text: str = Field(min_length=1)


# What the server refuses whatever its settings is declared here, so a client (or a generated test) sees it in the
# schema: an empty query or document text, or no query at all.
_Text = Annotated[str, Field(min_length=1)]


class SearchRequest(_Strict):
    query: _Text | Annotated[list[_Text], Field(min_length=1)] = Field(
        description="A question, or a list of them (the documents are embedded once)."
    )
    documents: list[_Text | SearchDocument] = Field(
        min_length=1, description="The texts searched, of any length: strings, or {id, text} objects."
    )
    model: str | None = Field(None, description="The served model's name; another name is a 404. May be left out.")
    top_k: Integer = Field(10, ge=1, description="Hits per query: the best chunks over all documents.")
    hybrid: bool = Field(
        True, description="Dense cosine fused with BM25 over the same chunks (measured best); false: dense only."
    )
    chunk_tokens: Integer = Field(
        DEFAULT_CHUNK_TOKENS, ge=1, description="Tokens per chunk; the server sets a minimum (GET /info)."
    )


class SearchHit(BaseModel):
    document: int = Field(description="Index of the document in the request.")
    id: str | None = Field(description="The document's id, when it was given as {id, text}.")
    start: int = Field(description="First character of the passage in the document text.")
    end: int = Field(description="One past its last character (half-open).")
    score: float = Field(description="The fused score (the cosine when hybrid is false); higher is better.")
    dense: float = Field(description="Cosine similarity of the query and chunk vectors.")
    lexical: float | None = Field(description="BM25 score of the passage for the query; null when hybrid is false.")
    text: str = Field(description="The passage: the document's text[start:end].")


class SearchResult(BaseModel):
    object: Literal["search_result"] = "search_result"
    query: int = Field(description="Index of the query in the request.")
    hits: list[SearchHit]


class SearchResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[SearchResult]
    model: str
    usage: Usage


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok", "loading", "failed"]
    model: str
    dimensions: int | None = None
    provider: str | None = Field(
        default=None, description="What runs the encoder, e.g. onnxruntime CPUExecutionProvider."
    )


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    prompts: dict[str, str] = Field(
        default_factory=dict, description="The bundle's prompts by name (a request's prompt_name picks one)."
    )
    default_prompt_name: str | None = Field(None, description="The prompt a request that names none gets.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class Pooling(BaseModel):
    mode: str = Field(description="mean, cls or last: how token states become one vector.")
    normalize: bool = Field(description="Vectors are L2-normalized.")
    include_prompt: bool = Field(description="Prompt tokens count in the pooled mean.")


class Info(BaseModel):
    model: str
    version: str
    dimensions: int
    window: int = Field(description="Encoder window in positions (framing included).")
    max_positions: int
    stride: int = Field(description="Default window stride in content tokens.")
    limits: dict[str, int | float] = Field(
        description="Every request limit, by its flag's name (seconds for timeouts)."
    )
    provider: str = Field(description="What runs the encoder: engine, execution provider, pooled or token-state graph.")
    variant: str = Field(description="The bundle's graph variant served (--variant).")
    mode: str = Field(description="What mode 'auto' resolves to for this bundle.")
    prompts: dict[str, str] = Field(description="The bundle's prompts by name.")
    default_prompt_name: str | None = Field(description="The prompt a request that names none gets; null: none.")
    pooling: Pooling
    max_batch_tokens: int = Field(description="Padded tokens per encoder call (--max-batch-tokens).")
