"""What a system says about itself: its health, partitions, nodes, reservations, the
caller's accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from hpcgate.model.bounds import Reported


class Partition(BaseModel):
    """A partition (Slurm) or queue (PBS): where jobs can go and under which limits."""

    name: str
    state: str = Field(description="UP, DOWN, DRAIN, INACTIVE (as the scheduler says)")
    default: bool = Field(description="Jobs that name no partition go here")
    nodes: list[str] = Field(description="The partition's nodes, expanded")
    total_cpus: Reported | None = None
    total_nodes: Reported | None = None
    max_time: Reported | None = Field(None, description="Longest time limit in seconds; None: none")
    default_time: Reported | None = Field(None, description="Time limit of jobs that set none")
    max_nodes: Reported | None = Field(None, description="Most nodes one job may use; None: any")


class Node(BaseModel):
    """A compute node and what it has."""

    name: str
    state: str = Field(description="IDLE, MIXED, ALLOCATED, DOWN, DRAINED... (+ flags)")
    partitions: list[str]
    cpus: Reported
    cpus_allocated: Reported
    memory: Reported = Field(description="Configured memory in MiB")
    memory_allocated: Reported = Field(description="Memory allocated to jobs in MiB")
    gpus: Reported = Field(description="GPUs on the node (from its generic resources)")
    features: list[str]
    reason: str | None = Field(None, description="Why the node is down or drained")
    address: str | None = Field(
        None, description="The address the cluster reaches the node at (Slurm's NodeAddr)"
    )


class Reservation(BaseModel):
    """Nodes set aside for some users or accounts for a time."""

    name: str
    state: str = Field(description="ACTIVE or INACTIVE")
    start_time: datetime | None
    end_time: datetime | None
    nodes: list[str]
    users: list[str]
    accounts: list[str]
    partition: str | None = None
    flags: list[str]


class Association(BaseModel):
    """One (account, partition) the caller may charge jobs to, and its limits."""

    account: str
    user: str
    partition: str | None = Field(None, description="None: every partition")
    qos: list[str]
    default_qos: str | None = None
    default: bool = Field(description="The caller's default account")
    max_jobs: Reported | None = None
    max_submit_jobs: Reported | None = None
    max_wall: Reported | None = Field(None, description="Longest time limit in seconds; None: none")


class AgentInfo(BaseModel):
    """An outbound agent connected to this gateway process and serving the system."""

    id: str
    host: str
    version: str
    connected_since: datetime
    user: str | None = Field(
        None, description="The one account it serves (null: it runs as root and serves all)"
    )


class SystemInfo(BaseModel):
    name: str
    description: str
    scheduler: str = Field(description="embedded, slurm, ...")
    transport: str = Field(description="local, ssh, agent")
    healthy: bool = Field(description="Did the latest scheduler query succeed?")
    health_message: str
    checked_at: datetime | None = Field(None, description="When health was last checked")
    roots: list[str] | None = Field(
        None,
        description="Where your file operations may go (GET of one system only; null while"
        " the system can't be reached)",
    )
    home: str | None = Field(
        None, description="Your home (or default) directory: where relative paths start"
    )
    agents: list[AgentInfo] | None = Field(
        None, description="transport = 'agent': the agents connected (GET of one system only)"
    )
    run_as: Literal["user", "gateway", "functional"] = Field(
        "gateway",
        description="Whose Unix account your jobs and file operations run as: 'user' (your"
        " own: a gateway running as root, multi-user mode), 'gateway' (the account the"
        " gateway runs as, never root), 'functional' (one account for every user)",
    )
