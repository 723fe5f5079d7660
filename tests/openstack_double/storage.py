"""Glance (images: list by name, show) and Cinder v3 (volumes: create with Cinder's quota message, list, show,
delete refused while attached)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .http import HttpError, Request, Response, Router
from .state import PROJECT_ID, Cloud, new_id, now_iso


class Images:
    def __init__(self, cloud: Cloud, base_url: Callable[[], str]) -> None:
        self.cloud, self.base_url = cloud, base_url

    def versions(self, request: Request) -> Response:
        link = [{"rel": "self", "href": f"{self.base_url()}/image/v2/"}]
        return Response(200, {"versions": [{"id": "v2.9", "status": "CURRENT", "links": link}]})

    def _render(self, image: dict[str, Any]) -> dict[str, Any]:
        return {
            **image,
            "container_format": "bare",
            "disk_format": "qcow2",
            "min_disk": 0,
            "min_ram": 0,
            "protected": False,
            "tags": [],
            "os_hidden": False,
            "owner": PROJECT_ID,
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "self": f"/v2/images/{image['id']}",
            "file": f"/v2/images/{image['id']}/file",
            "schema": "/v2/schemas/image",
        }

    def list(self, request: Request) -> Response:
        images = list(self.cloud.images.values())
        if request.arg("name"):
            images = [i for i in images if i["name"] == request.arg("name")]
        return Response(200, {"images": [self._render(i) for i in images], "schema": "/v2/schemas/images"})

    def show(self, request: Request) -> Response:
        image = self.cloud.images.get(request.params["id"])
        if image is None:
            raise HttpError(
                404, {"code": 404, "title": "Not Found", "message": f"No image found with ID {request.params['id']}"}
            )
        return Response(200, self._render(image))

    def register(self, router: Router) -> None:
        router.add("GET", "/image", "image.versions", self.versions)
        router.add("GET", "/image/versions", "image.versions", self.versions)
        router.add("GET", "/image/v2/images", "image.images.list", self.list)
        router.add("GET", "/image/v2/images/{id}", "image.images.show", self.show)


class Volumes:
    def __init__(self, cloud: Cloud, base_url: Callable[[], str]) -> None:
        self.cloud, self.base_url = cloud, base_url

    def _version(self) -> dict[str, Any]:
        link = [{"rel": "self", "href": f"{self.base_url()}/volume/v3/"}]
        return {"id": "v3.0", "status": "CURRENT", "version": "3.70", "min_version": "3.0", "links": link}

    def versions(self, request: Request) -> Response:
        return Response(300, {"versions": [self._version()]})

    def version(self, request: Request) -> Response:
        return Response(200, {"versions": [self._version()]})

    def list(self, request: Request) -> Response:
        volumes = list(self.cloud.volumes.values())
        if request.arg("name"):
            volumes = [v for v in volumes if v["name"] == request.arg("name")]
        return Response(200, {"volumes": volumes})

    def show(self, request: Request) -> Response:
        volume = self.cloud.volumes.get(request.params["id"])
        if volume is None:
            raise HttpError(
                404, {"itemNotFound": {"code": 404, "message": f"Volume {request.params['id']} could not be found."}}
            )
        return Response(200, {"volume": volume})

    def create(self, request: Request) -> Response:
        body = (request.body or {}).get("volume") or {}
        size = int(body.get("size") or 0)
        if size <= 0:
            raise HttpError(400, {"badRequest": {"code": 400, "message": "Invalid input received: size must be > 0"}})
        quotas, used = self.cloud.quotas, self.cloud.usage()
        if quotas.gigabytes >= 0 and used["gigabytes"] + size > quotas.gigabytes:
            message = (
                "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota. "
                f"Requested {size}G, quota is {quotas.gigabytes}G and {used['gigabytes']}G has been consumed."
            )
            raise HttpError(413, {"overLimit": {"code": 413, "message": message}})
        volume = {
            "id": new_id(),
            "name": body.get("name") or "",
            "size": size,
            "status": "available",
            "volume_type": body.get("volume_type") or "__DEFAULT__",
            "metadata": body.get("metadata") or {},
            "bootable": "false",
            "availability_zone": "nova",
            "created_at": now_iso(),
            "description": body.get("description"),
            "attachments": [],
        }
        self.cloud.volumes[volume["id"]] = volume
        return Response(202, {"volume": volume})

    def delete(self, request: Request) -> Response:
        volume = self.cloud.volumes.get(request.params["id"])
        if volume is None:
            raise HttpError(
                404, {"itemNotFound": {"code": 404, "message": f"Volume {request.params['id']} could not be found."}}
            )
        if volume["attachments"]:
            message = (
                "Invalid volume: Volume status must be available or error or error_restoring or error_extending or "
                "error_managing and must not be migrating, attached, belong to a group, have snapshots or be "
                "disassociated from snapshots after volume transfer."
            )
            raise HttpError(400, {"badRequest": {"code": 400, "message": message}})
        del self.cloud.volumes[volume["id"]]
        return Response(202)

    def register(self, router: Router) -> None:
        base = "/volume/v3/{project}"
        router.add("GET", "/volume", "volume.versions", self.versions)
        router.add("GET", "/volume/v3", "volume.version", self.version)
        router.add("GET", f"{base}/volumes/detail", "volume.volumes.list", self.list)
        router.add("GET", f"{base}/volumes", "volume.volumes.list", self.list)
        router.add("POST", f"{base}/volumes", "volume.volumes.create", self.create)
        router.add("GET", f"{base}/volumes/{{id}}", "volume.volumes.show", self.show)
        router.add("DELETE", f"{base}/volumes/{{id}}", "volume.volumes.delete", self.delete)
