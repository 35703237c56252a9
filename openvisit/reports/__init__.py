"""Reports for the portal's reporter and org admin roles (issue 14): usage against the monthly
allocation, call quality, SMS and e-mail delivery, and the patient drop-off funnel; as pages
with SVG charts, CSV downloads (audited) and JSON under ``/api/reports``. Every number is an
SQL aggregate (``repository.py``); patient references appear only as counts unless the
organisation's admin turns them on."""
