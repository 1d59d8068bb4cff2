// Calls profilestore's Delivery API through Adobe's official SDK, configured as for real
// Target except for serverDomain and secure. Prints the SDK's result as JSON.
// Usage: node get_offers.js HOST:PORT ORGANIZATION_ID CLIENT THIRD_PARTY_ID
const TargetClient = require("@adobe/target-nodejs-sdk");

const [serverDomain, organizationId, client, thirdPartyId] = process.argv.slice(2);
const quiet = { debug() {}, error: console.error };

const target = TargetClient.create({ client, organizationId, serverDomain, secure: false, timeout: 10000, logger: quiet });

target
  .getOffers({
    request: {
      id: { thirdPartyId },
      context: { channel: "web" },
      execute: {
        pageLoad: { profileParameters: { favoriteColor: "green", visits: 3 } },
        mboxes: [{ index: 0, name: "hero", profileParameters: { heroSeen: "yes" } }],
      },
      prefetch: { mboxes: [{ index: 0, name: "footer" }] },
    },
  })
  .then((result) => {
    console.log(JSON.stringify({ response: result.response, targetCookie: result.targetCookie }));
  })
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });
