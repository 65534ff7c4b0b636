"""lightkube resource classes of Headwater's own kinds, defined once for every module."""

from __future__ import annotations

from lightkube.generic_resource import create_namespaced_resource

ImageStream = create_namespaced_resource("image.headwater.dev", "v1", "ImageStream", "imagestreams")
BuildConfig = create_namespaced_resource("build.headwater.dev", "v1", "BuildConfig", "buildconfigs")
Build = create_namespaced_resource("build.headwater.dev", "v1", "Build", "builds")
