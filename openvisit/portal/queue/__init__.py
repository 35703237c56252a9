"""The department (front-desk) queue in the portal: ``/portal/queue`` (issue 15 item 3)."""
