-- Nothing reads alerts by status (the incident worker keeps the firing alerts of the open
-- incident in incident_alerts), so the index only cost a write per alert received.

DROP INDEX alerts_by_status;
