-- Argo CD health of a certinext.io Account, PrivateCA or Certificate, from its conditions.
-- Argo CD runs it with the object as `obj` (gopher-lua, Lua 5.1).
--   Healthy      Ready=True for the current generation
--   Progressing  no status yet, a generation not yet observed, Issuing=True (a Certificate
--                whose order is under way), or Ready not True for a reason that means "not yet"
--   Degraded     Ready=False for any other reason: a refusal the user must act on
--                (NamespaceConflict, Overdrawn, CapabilityDenied, DomainNotAllowed, …)
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

-- Ready=False reasons that say the operator is still working, not that it refused.
local in_progress = {
  Pending = true,
  Issuing = true,
  PendingApproval = true,
  Reconciling = true,
}

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local issuing = condition(status, "Issuing")
if issuing ~= nil and issuing.status == "True" then
  hs.status = "Progressing"
  hs.message = issuing.message or "Issuing"
  return hs
end

local ready = condition(status, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
if ready.status ~= "False" or in_progress[ready.reason] then
  hs.status = "Progressing"
  hs.message = ready.message or "Not ready yet"
  return hs
end
hs.status = "Degraded"
hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
return hs
