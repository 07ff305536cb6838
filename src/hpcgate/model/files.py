"""What the files API takes and returns."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hpcgate.model.bounds import BYTES_ASKED_MAX, BYTES_MAX, ID_MAX, Number

Kind = Literal["file", "directory", "symlink", "other"]


#: A path in a request: absolute, or relative to the caller's home (or default) directory.
#: Each name in it is at most 255 bytes, which JSON Schema cannot say (it counts characters).
RequestPath = Annotated[str, Field(min_length=1, max_length=4096)]


class FileEntry(BaseModel):
    """One file, directory or link (a link's own details; its target is not followed)."""

    name: str
    path: str = Field(description="The absolute path, as resolved on the system")
    type: Kind
    size: int = Field(ge=0, le=BYTES_MAX, description="Bytes (a link: the length of its target)")
    mode: str = Field(description="Permission bits in octal, e.g. '0644'")
    permissions: str = Field(description="As `ls -l` shows them, e.g. '-rw-r--r--'")
    uid: int = Field(ge=0, le=ID_MAX)
    gid: int = Field(ge=0, le=ID_MAX)
    user: str | None = Field(None, description="Owner's name (absent when numeric=true)")
    group: str | None = Field(None, description="Group's name (absent when numeric=true)")
    modified: float = Field(description="Last modification, seconds since the epoch")
    accessed: float
    changed: float | None = Field(
        description="Last change of the inode (null over SSH: SFTP does not carry it)"
    )
    link_target: str | None = Field(None, description="Where a symlink points, as stored")


class Listing(BaseModel):
    path: str
    entries: list[FileEntry]


class Checksum(BaseModel):
    path: str
    algorithm: str
    checksum: str = Field(description="Hex digest")


class Content(BaseModel):
    path: str
    content: str = Field(description="The bytes as UTF-8 (invalid bytes replaced)")
    bytes: int = Field(ge=0, le=BYTES_MAX, description="How many bytes were read")


class FileType(BaseModel):
    path: str
    type: Kind
    mime_type: str | None = Field(None, description="For a regular file, from its first bytes")


class MakeDirectory(BaseModel):
    path: RequestPath
    parents: bool = Field(False, description="Create missing parents; no error if it exists")


class ChangeMode(BaseModel):
    path: RequestPath
    mode: str = Field(pattern=r"^[0-7]{3,4}$", description="Octal, e.g. '750'")


class ChangeOwner(BaseModel):
    """An owner, a group or both (the document says so with ``anyOf``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "string"}}}
                for name in ("owner", "group")
            ]
        }
    )

    path: RequestPath
    owner: str | None = Field(None, pattern=r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$")
    group: str | None = Field(None, pattern=r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$")

    @field_validator("owner", "group")
    @classmethod
    def _ids_in_range(cls, value: str | None) -> str | None:
        """A name of digits is a uid or gid: it must be one the system can hold."""
        if value is not None and value.isdigit() and int(value) > ID_MAX:
            raise ValueError(f"a numeric id is at most {ID_MAX}")
        return value

    @model_validator(mode="after")
    def _owner_or_group(self) -> ChangeOwner:
        if self.owner is None and self.group is None:
            raise ValueError("give an owner, a group or both")
        return self


class MakeLink(BaseModel):
    path: RequestPath = Field(description="The link to create")
    target: RequestPath = Field(description="What it points to; must lie inside the roots")


class Uploaded(BaseModel):
    entry: FileEntry
    sha256: str = Field(description="Digest of the bytes received")


class NewUpload(BaseModel):
    path: RequestPath = Field(description="Where the file will be, once complete")
    size: Number = Field(ge=0, le=BYTES_ASKED_MAX, description="Its size in bytes")
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-fA-F]{64}$", description="Refuse the file unless it matches"
    )
    overwrite: bool = Field(False, description="Replace an existing file at the end")


class UploadState(BaseModel):
    id: str
    system: str
    path: str
    size: int = Field(ge=0, le=BYTES_MAX)
    offset: int = Field(
        ge=0, le=BYTES_MAX, description="Bytes received: send the next chunk from here"
    )
    complete: bool = False
    sha256: str | None = Field(None, description="The file's digest, once complete")
    entry: FileEntry | None = Field(None, description="The file, once complete")


Compression = Literal["gzip", "bzip2", "xz", "none"]


class Transfer(BaseModel):
    source: RequestPath
    target: RequestPath
    overwrite: bool = Field(False, description="Replace an existing target")


#: An archive's suffix and the compression it says; any other name is gzip.
SUFFIXES: dict[str, Compression] = {
    ".tar.gz": "gzip",
    ".tgz": "gzip",
    ".tar.bz2": "bzip2",
    ".tbz2": "bzip2",
    ".tbz": "bzip2",
    ".tar.xz": "xz",
    ".txz": "xz",
    ".tar": "none",
}


def compression_of(name: str) -> Compression:
    """The compression an archive's name says (``x.tar.xz``: xz), gzip if it says none."""
    lowered = name.lower()
    return next((kind for end, kind in SUFFIXES.items() if lowered.endswith(end)), "gzip")


class Compress(BaseModel):
    source: RequestPath = Field(description="A file or directory to archive")
    target: RequestPath = Field(description="The archive to create")
    compression: Compression | Literal["auto"] = Field(
        "auto",
        description="auto: from the target's suffix (.tar.gz or .tgz gzip, .tar.bz2 bzip2,"
        " .tar.xz xz, .tar none), gzip for any other name",
    )
    overwrite: bool = False

    def chosen_compression(self) -> Compression:
        """The compression to use: the one asked for, or the target's suffix's."""
        if self.compression == "auto":
            return compression_of(self.target)
        return self.compression


class Extract(BaseModel):
    source: RequestPath = Field(description="A tar archive (gzip, bzip2 or xz compressed, or not)")
    target: RequestPath = Field(
        description="The directory to extract into: created by the request, which is a 409 "
        "if it exists (missing parents are created)"
    )
    compression: Compression | Literal["auto"] = Field(
        "auto", description="auto: recognised from the archive's first bytes"
    )
