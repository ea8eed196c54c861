"""The service layer every entry point shares (HTTP routes, the CLI, the demo, line sources):
inspect a part and store its result, deploy and roll back models, tidy the image folder.
It raises the project's own errors; `inference/api/` maps them to HTTP status codes."""

from defectlens.inference.service.core import InspectionService
from defectlens.inference.service.inspection import Inspected, PartMetadata
from defectlens.inference.service.settings import ServiceSettings

__all__ = ["Inspected", "InspectionService", "PartMetadata", "ServiceSettings"]
