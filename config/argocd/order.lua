-- Argo CD health of a certinext.io Order, from status.state.
-- Argo CD runs it with the object as `obj` (gopher-lua, Lua 5.1).
--   Progressing  no state yet, PendingApproval (waiting for an approver), Approved (issuing)
--   Healthy      Issued; also Cancelled: the order was superseded by a newer revision of its
--                Certificate before issuance and any charge was refunded, which is the normal
--                outcome of changing a Certificate, not a fault
--   Degraded     Denied (by an approver), Rejected (by policy), Failed (issuance error)
local hs = {}

local function ready_message(status)
  if status.conditions ~= nil then
    for _, c in ipairs(status.conditions) do
      if c.type == "Ready" and c.message ~= nil and c.message ~= "" then
        return c.message
      end
    end
  end
  return nil
end

local status = obj.status or {}
local state = status.state
local explained = ready_message(status)

if state == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
elseif state == "PendingApproval" then
  hs.status = "Progressing"
  hs.message = explained or "Waiting for approval"
elseif state == "Approved" then
  hs.status = "Progressing"
  hs.message = explained or "Approved; issuing"
elseif state == "Issued" then
  hs.status = "Healthy"
  hs.message = explained or "Issued"
elseif state == "Cancelled" then
  hs.status = "Healthy"
  hs.message = explained or "Cancelled: superseded before issuance"
elseif state == "Denied" or state == "Rejected" or state == "Failed" then
  hs.status = "Degraded"
  hs.message = state .. ": " .. (explained or "")
else
  hs.status = "Unknown"
  hs.message = "Unknown order state " .. tostring(state)
end
return hs
