// Parse and validate Adaptive Cards with Microsoft's adaptivecards SDK (no DOM needed for this).
// stdin: a JSON list of cards; stdout: a JSON list of {version, items, issues} (one per card),
// issues being what the SDK reports while parsing (unknown types, invalid values) and
// validating (validateProperties), for the card version the card declares.
"use strict";
const AC = require("adaptivecards/dist/adaptivecards.js");

const cards = JSON.parse(require("fs").readFileSync(0, "utf8"));
const results = cards.map((json) => {
  const card = new AC.AdaptiveCard();
  const target = AC.Version.parse(json.version, new AC.SerializationContext());
  const context = new AC.SerializationContext(target);
  card.parse(json, context);
  const issues = [];
  for (let i = 0; i < context.eventCount; i++) {
    const e = context.getEventAt(i);
    issues.push(`${AC.ValidationEvent[e.event]}: ${e.message}`);
  }
  for (const e of card.validateProperties().validationEvents) {
    issues.push(`${AC.ValidationEvent[e.event]}: ${e.message}`);
  }
  return { version: card.version.toString(), items: card.getItemCount(), issues };
});
process.stdout.write(JSON.stringify(results));
