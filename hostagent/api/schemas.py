"""Request bodies of the agent's local API (shared by the CNI routes)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, IPvAnyAddress

from vxcommon.names import check_endpoint_name, check_ifname, check_name

Name = Annotated[str, AfterValidator(check_name)]
EndpointName = Annotated[str, AfterValidator(check_endpoint_name)]
IfName = Annotated[str, AfterValidator(check_ifname)]
Text = Annotated[str, Field(min_length=1, max_length=4096)]
Labels = Annotated[dict[str, str], Field(max_length=64)]


class AttachRequest(BaseModel):
    """Plug a network namespace into a network."""

    netns: Text
    name: EndpointName
    network: Name
    ip: IPvAnyAddress | None = None
    ifname: IfName = "eth0"
    labels: Labels = {}
    ready_timeout: Annotated[float, Field(gt=0, le=60)] | None = None


class DetachRequest(BaseModel):
    """Unplug an endpoint."""

    name: EndpointName
    network: Name
